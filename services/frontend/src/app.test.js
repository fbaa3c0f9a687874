test("renders", () => {});
