document.getElementById("app").textContent = "ai-infra";
