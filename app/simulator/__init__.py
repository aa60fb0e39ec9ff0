"""A built-in simulator of the upstream generation APIs, so the product runs and is tested offline.

`create_simulator_app(config=None, *, clock=None)` returns a Starlette ASGI app that speaks the
same endpoints as the adapters in `app/clients/`. Use it over real HTTP (`genapi simulator
--port N`, or uvicorn in a test) or in-process through `httpx.ASGITransport` (any base URL, e.g.
`http://simulator.internal`: media URLs are built from each request's base URL, or from
`SimulatorConfig.public_base_url` when set). `app.state.simulator` is the `Simulator`
instance (config, task store, stats) for tests that prefer Python over the control endpoints.

Endpoints (all but `/health` and `/media/*` need `Authorization: Bearer <key>`: the configured
`api_key`, or any non-empty key when it is None; otherwise 401
`{"error": {"message": "invalid api key", "type": "invalid_request_error"}}`. The Gemini and
Kling endpoints authenticate their own way, see below):

- Sora aggregator: `POST /v2/videos/generations` -> `{"task_id"}`;
  `GET|DELETE /v2/videos/generations/{id}` (DELETE cancels).
- Veo: `POST /v1/video/veo/text-to-video`, `/image-to-video`; `GET|DELETE /v1/video/veo/tasks/{id}`.
- Seedance: `POST /v1/video/seedance/{text,image,frames}-to-video`;
  `GET|DELETE /v1/video/seedance/tasks/{id}`.
- Images (synchronous): `POST /v1/images/generations` (JSON), `POST /v1/images/edits` (multipart,
  `image` and/or `image[]`, optional `mask`) -> `{created, data: [{url} | {b64_json}]}`.
- OpenAI Sora: `POST /v1/videos` (JSON or multipart), `GET /v1/videos` (list),
  `GET|DELETE /v1/videos/{id}`, `GET /v1/videos/{id}/content[?variant=thumbnail]`,
  `POST /v1/videos/{id}/remix`.
- ByteDance Ark (bearer key; 401 `{"error": {"code": "AuthenticationError", …}}`):
  `POST /api/v3/contents/generations/tasks` `{model, content: [{type: "text", text},
  {type: "image_url", image_url: {url}, role?: first_frame|last_frame|reference_image}],
  callback_url?, resolution, ratio, duration, seed, camera_fixed, watermark}` -> `{id}`
  (`cgt_…`); `GET …/tasks/{id}` -> `{id, model, status: queued|running|succeeded|failed|
  cancelled|expired, content: {video_url}, usage, error: {code, message}, created_at,
  updated_at, resolution, ratio, duration, seed, framespersecond}` (no progress, seconds);
  `DELETE …/tasks/{id}` cancels a queued task, deletes a finished one (then 404), and refuses a
  running one with 409 `OperationDenied`. Bad input: 400 `{"error": {"code":
  "InvalidParameter", "message"}}`.
- Gemini API (Veo), authenticated by `x-goog-api-key` (or `?key=`) like Google: a wrong key is
  400 `INVALID_ARGUMENT` with reason `API_KEY_INVALID`, a bearer token alone 401
  `UNAUTHENTICATED`, nothing 403 `PERMISSION_DENIED`; errors are `{"error": {code, message,
  status}}`. `POST /v1beta/models/{veo-…}:predictLongRunning` `{instances: [{prompt, image?,
  lastFrame?: {bytesBase64Encoded, mimeType}, referenceImages?}], parameters?: {aspectRatio,
  durationSeconds 4-8, negativePrompt, resolution, personGeneration, sampleCount, seed}}`
  (unknown fields are 400, a non-Veo model 404) -> `{name: "models/{model}/operations/{id}"}`;
  `GET /v1beta/models/{model}/operations/{id}` -> `{name}` while running (no `done`, no
  progress), then `{name, done: true, response: {generateVideoResponse: {generatedSamples:
  [{video: {uri}}]}}}` or `{name, done: true, error: {code, message}}`. The sample URI is
  `/v1beta/files/{id}:download?alt=media`, which needs the same key (the Files API);
  `GET /v1beta/files/{id}` is its metadata. Operation ids are plain (no `[sim:weird-id]`).
- Kling, authenticated by `Authorization: Bearer <JWT>` (HS256, claims `iss`, `exp`, `nbf`
  checked against the wall clock, not the simulated one). With `api_key` = `ACCESS:SECRET` the
  signature is verified with SECRET and `iss` must be ACCESS; a key without ':' is the secret
  (any issuer); None accepts any well-formed, unexpired token. Refusals are 401 `{code,
  message, request_id}` with Kling's codes (1001 missing, 1002 invalid, 1003 not yet valid,
  1004 expired); the request log names the access key's fingerprint, never the token.
  `POST /v1/videos/text2video` `{model_name, prompt, negative_prompt, cfg_scale, mode,
  aspect_ratio, duration: "5"|"10", callback_url}` and `POST /v1/videos/image2video` (same,
  with `image` and optional `image_tail`: URL or bare base64; a `data:` prefix is refused) ->
  `{code: 0, message: "SUCCEED", request_id, data: {task_id, task_status: "submitted",
  created_at, updated_at}}`; `GET /v1/videos/{text2video|image2video}/{task_id}` (only under
  the endpoint that created it, else 404 code 1203) -> the same envelope with `data: {task_id,
  task_status: submitted|processing|succeed|failed, task_status_msg, task_result: {videos:
  [{id, url, duration}]}}` (times in ms; expired and cancelled tasks read `failed`). Bad input:
  400 code 1201. No cancel endpoint, as in the real API.
  The official APIs share the task store, media, directives and faults with the rest (a fault
  answers in the generic shape).
- Media (no auth, like a CDN): `GET|HEAD /media/{file_id}.{mp4,png,jpg,webp}` with `Range`
  support, `Content-Length` or chunked; 404 before completion and after expiry.
- Control (key checked; no latency, not in the request log):
  `GET|POST /_sim/config` (partial update; `variants` merge per family),
  `POST /_sim/reset`, `GET /_sim/stats[?prompt=…&tasks=1]`, `GET /_sim/requests[?limit=N]`
  (recent requests, keys only as a sha256 prefix), `GET /_sim/tasks/{id}`,
  `POST /_sim/tasks/{id}/expire-media`. `GET /health` (no auth).

Task lifecycle: state is computed from the creation time on every poll (no timers): queued for
`queued_fraction * task_seconds`, then in progress with progress rising 1..99, then the outcome
at `task_seconds` (completed unless a directive says otherwise). `task_seconds=0` completes on the
first poll. `[sim:polls=N]` switches a task to poll-count mode (first poll queued, completed at the
N-th answered poll), independent of the clock.

Status payload dialects (`config.ResponseVariant`; defaults per family in
`SimulatorConfig.variants`: sora -> preset "sora", veo -> "veo", seedance -> "ark"): envelope
on/off and its code, id field, status field (or a boolean `done`), status vocabulary, progress as
int / "NN%" / float / absent, result placement, error placement, times in s or ms. Presets:
sora, veo, ark, kling, gemini, upper, output, generic.

Directives, written anywhere in the prompt as `[sim:name]` or `[sim:name=value]` (an unknown
name answers 400 so typos do not pass silently):

Task outcome
- `[sim:fail]`, `[sim:fail=reason]`    the task ends failed with that reason (images: 400
                                         `generation_failed`)
- `[sim:expire]`                        the task ends in the "expired" state
- `[sim:cancelled]`                     the task ends cancelled upstream (also `cancel`, `canceled`)
- `[sim:never]`                         the task never finishes (stays in progress at <= 99)
- `[sim:expired-url]`                   completes, but its media URL answers 404
- `[sim:task-seconds=S]`                this task's duration instead of `task_seconds`
- `[sim:polls=N]`                       poll-count mode: completes at the N-th answered poll
Create faults (the n-th identical create, same path and prompt, gets the n-th listed fault;
each is used `fault-times` times, then creates succeed)
- `[sim:429]`, `[sim:429=S]`            429 with `Retry-After` (config `retry_after`, or S)
- `[sim:429-no-retry-after]`            429 without `Retry-After`
- `[sim:500]`, `[sim:502]`, `[sim:503]`, `[sim:504]`   JSON 5xx
- `[sim:html]`                          502 with an HTML error page
- `[sim:html-200]`                      200 with an HTML page instead of JSON
- `[sim:malformed]`                     200 with truncated JSON
- `[sim:envelope-error]`                200 `{"code": "error", "message": …, "data": null}`
- `[sim:accepted-500]`                  video families: the task IS created but the answer is a
                                         500 (tests that a client never blindly resubmits)
- `[sim:fault-times=N]`                 each listed fault repeats N times; `always` forever
- `[sim:retry-after=S]`                 Retry-After seconds for this request's 429s
- `[sim:reject]`, `[sim:reject=reason]`, `[sim:400]`   400 with the reason, every time
Poll faults (consumed by the next polls of the task, in order, then polls recover)
- `[sim:poll-fail-n=N]`                 next N polls answer 500
- `[sim:poll-KIND-n=N]`                 KIND: 429, 429-no-retry-after, 500, 502, 503, 504, html,
                                         html-200, malformed, envelope-error, 404
Latency and transfer
- `[sim:slow=S]`                        the create (or image) call takes S more seconds
- `[sim:poll-slow=S]`                   every poll of this task takes S more seconds
- `[sim:chunked]`, `[sim:no-chunked]`   media with Transfer-Encoding: chunked, or not
Dialect (status payload shape, for this task only)
- `[sim:variant=NAME]`                  a preset (see above)
- `[sim:envelope=on|off]`, `[sim:envelope-code=0]`, `[sim:id-field=taskId]`,
  `[sim:status-field=task_status|state|done]`, `[sim:vocab=NAME]` (default, sora, veo, ark,
  kling, upper, done, misc), `[sim:word-<state>=WORD]` (state: queued, in_progress, completed,
  failed, cancelled, expired), `[sim:progress=int|percent|float|none]`,
  `[sim:result=video_url|videoUrl|url|result_url|output|output.url|output.video_url|
  content.video_url|gemini|kling|data_list|video_base64]`,
  `[sim:error=fail_reason|error|error_obj|message|detail|task_status_msg]`, `[sim:time=s|ms]`
Ids
- `[sim:weird-id]`                      the task id contains ':' and '/' (a '/' that reaches the
                                         server unencoded answers 404, as a real router would)

Configuration-driven faults (`SimulatorConfig`): `latency` on every API call, `create_error_rate`
and `poll_error_rate` drawing `error_kinds` from a `seed`ed RNG, `result_ttl` expiring media,
`chunked` media, `special_ids` for every task.
"""

from __future__ import annotations

from app.simulator.app import Simulator, create_simulator_app
from app.simulator.config import VARIANT_PRESETS, ResponseVariant, SimulatorConfig

__all__ = [
    "VARIANT_PRESETS",
    "ResponseVariant",
    "Simulator",
    "SimulatorConfig",
    "create_simulator_app",
]
