# Rendered by `cargo xtask render` from templates/jupyterhub/jupyterhub_config.py.tpl: edit the template.
c = get_config()  # noqa: F821

c.JupyterHub.bind_url = "http://0.0.0.0:{{JUPYTERHUB_PORT}}/jupyter"
c.JupyterHub.hub_connect_ip = "jupyterhub"
c.Authenticator.admin_users = {"{{JUPYTERHUB_ADMIN_USER}}"}
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/cookie_secret"
c.Spawner.default_url = "/lab"
c.DockerSpawner.image = "ai-infra-singleuser:{{IMAGE_TAG}}"
c.Spawner.mem_limit = "{{SINGLEUSER_MEM_LIMIT}}"
