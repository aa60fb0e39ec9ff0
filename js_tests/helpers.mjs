// Shared by the front-end unit tests: the catalog exactly as GET /api/v1/models serves it
// (kept in step with app/core/catalog/builtin.yaml by tests/e2e/test_js_fixtures.py).

import { readFileSync } from "node:fs";

const fixture = new URL("./fixtures/models.json", import.meta.url);

export function loadModels() {
  return JSON.parse(readFileSync(fixture, "utf8")).data;
}

export function model(id) {
  const found = loadModels().find((item) => item.id === id);
  if (!found) {
    throw new Error("no model " + id + " in the fixture");
  }
  return found;
}
