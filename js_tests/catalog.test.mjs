import { test } from "node:test";
import assert from "node:assert/strict";

import {
  blockedChoices, buildCreateBody, coerceValue, controlFor, defaultValues, describeForm,
  fieldErrors, groupModels, imageHint, resolveMode, ruleViolations, validateForm,
} from "../app/static/js/lib/catalog.js";
import { loadModels, model } from "./helpers.mjs";

test("the model picker groups every catalog model by kind, in catalog order", () => {
  const models = loadModels();
  const groups = groupModels(models);
  assert.deepEqual(Object.keys(groups), ["video", "image"]);
  assert.equal(groups.video.length + groups.image.length, models.length);
  assert.ok(groups.video.every((m) => m.kind === "video"));
  assert.ok(groups.image.every((m) => m.kind === "image"));
  assert.equal(groups.video[0].id, models.find((m) => m.kind === "video").id);
});

test("each parameter gets the right control, options and default", () => {
  const form = describeForm(model("sora-2-pro"));
  const byName = Object.fromEntries(form.map((control) => [control.name, control]));
  assert.equal(byName.duration.control, "segmented");
  assert.deepEqual(byName.duration.options.map((o) => o.value), [10, 15, 25]);
  assert.deepEqual(byName.duration.options.map((o) => o.label), ["10 s", "15 s", "25 s"]);
  assert.equal(byName.duration.default, 10);
  assert.equal(byName.hd.control, "toggle");
  assert.equal(byName.hd.default, false);
  assert.equal(byName.aspect_ratio.default, "16:9");

  const seed = controlFor(model("doubao-seedance-1-0-pro").parameters.find((p) => p.name === "seed"));
  assert.equal(seed.control, "number");
  assert.equal(seed.min, -1);
  assert.equal(seed.max, 4294967295);
  assert.equal(seed.step, 1);

  // Long option lists become a select rather than a row of buttons.
  const ratio = controlFor(model("nano-banana").parameters.find((p) => p.name === "aspect_ratio"));
  assert.equal(ratio.control, "select");
  assert.equal(ratio.options.length, 11);
});

test("every parameter of every model maps to a known control", () => {
  for (const item of loadModels()) {
    for (const control of describeForm(item)) {
      assert.ok(["segmented", "select", "toggle", "number", "text"].includes(control.control),
        item.id + "." + control.name);
      if (control.options) {
        const values = control.options.map((o) => o.value);
        if (control.default !== null) {
          assert.ok(values.includes(control.default), item.id + "." + control.name);
        }
      }
    }
  }
});

test("defaults come from the catalog", () => {
  assert.deepEqual(defaultValues(model("veo3")), {
    duration: 8, aspect_ratio: "16:9", resolution: "720p",
  });
});

test("form values are read back with the parameter's type", () => {
  const duration = model("sora-2").parameters.find((p) => p.name === "duration");
  assert.deepEqual(coerceValue(duration, 15), { value: 15 });
  assert.deepEqual(coerceValue(duration, "15"), { value: 15 });
  assert.match(coerceValue(duration, "12").error, /one of 10, 15/);
  assert.deepEqual(coerceValue(duration, ""), { value: 10 });
  const size = model("nano-banana-2").parameters.find((p) => p.name === "image_size");
  assert.deepEqual(coerceValue(size, "2k"), { value: "2K" });
  const seed = model("doubao-seedance-1-0-pro").parameters.find((p) => p.name === "seed");
  assert.deepEqual(coerceValue(seed, "42"), { value: 42 });
  assert.match(coerceValue(seed, "4.5").error, /whole number/);
  assert.match(coerceValue(seed, "-2").error, /at least -1/);
  const hd = model("sora-2-pro").parameters.find((p) => p.name === "hd");
  assert.deepEqual(coerceValue(hd, true), { value: true });
  assert.deepEqual(coerceValue(hd, "off"), { value: false });
});

test("the mode follows the number of images, as on the server", () => {
  assert.deepEqual(resolveMode(model("doubao-seedance-1-0-pro"), 0), { mode: "text_to_video" });
  assert.deepEqual(resolveMode(model("doubao-seedance-1-0-pro"), 1), { mode: "image_to_video" });
  assert.deepEqual(resolveMode(model("doubao-seedance-1-0-pro"), 2), { mode: "frames_to_video" });
  assert.match(resolveMode(model("doubao-seedance-1-0-pro"), 3).error, /at most 2 images/);
  assert.match(resolveMode(model("doubao-seedance-1-0-lite-i2v"), 0).error, /at least one/);
  assert.match(resolveMode(model("flux-pro"), 1).error, /does not accept/);
  assert.deepEqual(resolveMode(model("gpt-image-1"), 3), { mode: "image_edit" });
});

test("cross-field rules are reported on every field involved", () => {
  const pro = model("sora-2-pro");
  const violations = ruleViolations(pro, { hd: true, duration: 25, aspect_ratio: "16:9" },
    "text_to_video");
  assert.equal(violations.length, 1);
  assert.equal(violations[0].field, "params.duration");
  assert.deepEqual(violations[0].fields, ["params.hd", "params.duration"]);
  assert.deepEqual(violations[0].allowed, [10, 15]);
  assert.equal(violations[0].message, "HD is not available for 25-second videos.");
  assert.deepEqual(ruleViolations(pro, { hd: false, duration: 25 }, "text_to_video"), []);

  // An "allow" rule: 1080p only for 8 s.
  const veo = ruleViolations(model("veo3"), { resolution: "1080p", duration: 4 }, "text_to_video");
  assert.deepEqual(veo.map((v) => v.field), ["params.duration"]);
  assert.deepEqual(veo[0].allowed, [8]);

  // A mode rule: "adaptive" needs an input image.
  const seedance = model("doubao-seedance-1-0-pro");
  assert.equal(ruleViolations(seedance, { ratio: "adaptive" }, "text_to_video").length, 1);
  assert.equal(ruleViolations(seedance, { ratio: "adaptive" }, "image_to_video").length, 0);
  assert.ok(ruleViolations(seedance, { ratio: "adaptive" }, "text_to_video")[0].fields
    .includes("images"));
});

test("choices that would break a rule are known before they are picked", () => {
  const pro = model("sora-2-pro");
  const blocked = blockedChoices(pro, { hd: true, duration: 10, aspect_ratio: "16:9" },
    "text_to_video");
  assert.deepEqual(Object.keys(blocked.duration), ["25"]);
  const fromDuration = blockedChoices(pro, { hd: false, duration: 25 }, "text_to_video");
  assert.deepEqual(Object.keys(fromDuration.hd), ["true"]);
  assert.equal(blockedChoices(model("sora-2"), defaultValues(model("sora-2")), "text_to_video")
    .duration, undefined);
});

test("the whole form is checked before submit", () => {
  const pro = model("sora-2-pro");
  const ok = validateForm(pro, { raw: { duration: 15, hd: true }, prompt: "a fox", n: 2 });
  assert.deepEqual(ok.errors, {});
  assert.deepEqual(ok.values, { aspect_ratio: "16:9", duration: 15, hd: true, watermark: false,
    private: false });
  assert.equal(ok.mode, "text_to_video");

  const bad = validateForm(pro, { raw: { duration: 25, hd: true }, prompt: "  ", n: 21,
    imagesCount: 2 });
  assert.equal(bad.errors.prompt, "Describe what you want to see.");
  assert.equal(bad.errors.n, "Between 1 and 20.");
  assert.match(bad.errors.images, /at most 1 image/);

  const rule = validateForm(pro, { raw: { duration: 25, hd: true }, prompt: "x" });
  assert.equal(rule.errors["params.duration"], "HD is not available for 25-second videos.");
});

test("the request body carries typed params, images, n, title and tags", () => {
  const body = buildCreateBody({
    model: model("sora-2"), prompt: "  a fox  ", title: " Fox ", values: { duration: 15 },
    images: ["https://example.com/a.png"], n: 3, tags: ["winter"],
  });
  assert.deepEqual(body, { model: "sora-2", prompt: "a fox", title: "Fox",
    params: { duration: 15 }, images: ["https://example.com/a.png"], n: 3, tags: ["winter"] });
  assert.deepEqual(buildCreateBody({ model: model("sora-2"), prompt: "x", title: "", values: {},
    images: [], n: 1 }), { model: "sora-2", prompt: "x", params: {} });
});

test("422 details land on their fields", () => {
  const details = [
    { field: "params.duration", message: "HD is not available for 25-second videos.",
      fields: ["params.hd", "params.duration"], allowed: [10, 15] },
    { field: "prompt", message: "String should have at least 1 character" },
    { field: "image[1]", message: "must be a PNG, JPEG or WebP image" },
    { field: "webhook_url", message: "must be an http(s) URL" },
  ];
  const known = ["prompt", "images", "params.hd", "params.duration"];
  const errors = fieldErrors(details, known);
  assert.deepEqual(errors["params.hd"], ["HD is not available for 25-second videos. (allowed: 10, 15)"]);
  assert.deepEqual(errors["params.duration"], errors["params.hd"]);
  assert.deepEqual(errors.prompt, ["String should have at least 1 character"]);
  assert.deepEqual(errors.images, ["must be a PNG, JPEG or WebP image"]);
  assert.deepEqual(errors[""], ["must be an http(s) URL"]);
  assert.deepEqual(fieldErrors(null), {});
});

test("the image hint explains what each model takes", () => {
  assert.equal(imageHint(model("flux-pro")), "This model works from the prompt only.");
  assert.match(imageHint(model("gpt-image-1")), /up to 16 reference images, and a mask/);
  assert.match(imageHint(model("doubao-seedance-1-0-pro")), /first and last frame/);
});
