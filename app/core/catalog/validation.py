"""Validate one generation request against the catalog.

`validate_request` is the single gate between an API body and an adapter: it resolves the
model, applies defaults, coerces values (`"15"` → `15`), checks images, mask and `n`, and
enforces the catalog's cross-field rules. Every problem becomes a 422 `ValidationFailed`
whose details name the field and, where there is a closed set, the allowed values:
`[{"field": "params.duration", "message": "...", "allowed": [10, 15]}]`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.clients.base import GenerationRequest, InputImage
from app.core.catalog.schema import Catalog, Mode, ModelKind, ModelSpec, Rule
from app.core.catalog.values import InvalidValue, Scalar
from app.core.errors import ValidationFailed


@dataclass(frozen=True)
class ValidatedRequest:
    """A request the catalog accepts, with every value in canonical form."""

    model: ModelSpec
    params: dict[str, Any]
    mode: Mode
    n: int = 1
    images_count: int = 0
    has_mask: bool = False
    upstream_model: str = field(init=False)
    adapter: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstream_model", self.model.upstream_model)
        object.__setattr__(self, "adapter", self.model.adapter)

    @property
    def model_id(self) -> str:
        return self.model.id

    @property
    def kind(self) -> ModelKind:
        return self.model.kind

    def to_generation_request(
        self,
        prompt: str,
        images: Sequence[InputImage] = (),
        mask: InputImage | None = None,
        callback_url: str | None = None,
    ) -> GenerationRequest:
        """The adapter's input; `images`/`mask` must be the ones counted when validating."""
        if len(images) != self.images_count or (mask is not None) != self.has_mask:
            raise ValueError("images or mask differ from the validated request")
        return GenerationRequest(
            kind=self.kind,
            model=self.upstream_model,
            prompt=prompt,
            params=dict(self.params),
            images=tuple(images),
            mask=mask,
            n=self.n,
            callback_url=callback_url,
        )


def _detail(field_name: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"field": field_name, "message": message, **extra}


def _resolve_model(catalog: Catalog, model_id: str, kind: ModelKind) -> ModelSpec:
    available = catalog.ids(kind)
    model = catalog.get(model_id) if isinstance(model_id, str) else None
    if model is None:
        raise ValidationFailed(
            f"Unknown {kind} model {model_id!r}",
            code="unknown_model",
            details=[_detail("model", f"unknown {kind} model", allowed=available)],
        )
    if model.kind != kind:
        raise ValidationFailed(
            f"Model {model.id!r} generates {model.kind}s, not {kind}s",
            code="wrong_model_kind",
            details=[_detail("model", f"not a {kind} model", allowed=available)],
        )
    return model


def _check_params(
    model: ModelSpec, raw: Mapping[str, Any], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    known = {p.name for p in model.parameters}
    for name in raw:
        if name not in known:
            errors.append(
                _detail(
                    f"params.{name}",
                    f"unknown parameter for {model.id}",
                    allowed=sorted(known),
                )
            )
    params: dict[str, Any] = {}
    for spec in model.parameters:
        value = raw.get(spec.name)
        # A null from a form means "not set": the default applies.
        if value is None:
            if spec.default is not None:
                params[spec.name] = spec.default
            elif spec.required:
                errors.append(_detail(f"params.{spec.name}", "is required"))
            continue
        try:
            params[spec.name] = spec.coerce(value)
        except InvalidValue as exc:
            extra: dict[str, Any] = {}
            if spec.allowed_values is not None:
                extra["allowed"] = spec.allowed_values
            if spec.min is not None:
                extra["min"] = spec.min
            if spec.max is not None:
                extra["max"] = spec.max
            errors.append(_detail(f"params.{spec.name}", str(exc), **extra))
    return params


def _resolve_mode(model: ModelSpec, images_count: int, errors: list[dict[str, Any]]) -> Mode | None:
    caps = model.capabilities
    modes = model.modes
    max_images = caps.max_reference_images
    if images_count < 0:
        errors.append(_detail("images", "count cannot be negative"))
        return None
    if images_count == 0:
        text_mode: Mode = "text_to_video" if model.kind == "video" else "text_to_image"
        if text_mode in modes:
            return text_mode
        errors.append(_detail("images", f"{model.id} needs at least one input image", min=1))
        return None
    if max_images == 0:
        errors.append(_detail("images", f"{model.id} does not accept input images", max=0))
        return None
    if images_count > max_images:
        noun = "image" if max_images == 1 else "images"
        errors.append(
            _detail("images", f"{model.id} accepts at most {max_images} {noun}", max=max_images)
        )
        return None
    if model.kind == "image":
        return "image_edit"
    if images_count == 2 and caps.frames_to_video:
        return "frames_to_video"
    if caps.image_to_video:
        return "image_to_video"
    errors.append(
        _detail("images", f"{model.id} needs exactly 2 images: first and last frame", min=2)
    )
    return None


def _check_n(model: ModelSpec, n: int, errors: list[dict[str, Any]]) -> None:
    max_n = model.capabilities.max_n
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_n:
        message = "must be 1" if max_n == 1 else f"must be between 1 and {max_n}"
        errors.append(_detail("n", message, min=1, max=max_n, allowed=list(range(1, max_n + 1))))


def _check_mask(
    model: ModelSpec, has_mask: bool, mode: Mode | None, errors: list[dict[str, Any]]
) -> None:
    if not has_mask:
        return
    if not model.capabilities.mask:
        errors.append(_detail("mask", f"{model.id} does not support a mask"))
    elif mode is not None and mode != "image_edit":
        errors.append(_detail("mask", "a mask needs at least one reference image"))


def _matches(condition: Any, value: Any) -> bool:
    options = condition if isinstance(condition, list) else [condition]
    return any(type(value) is type(option) and value == option for option in options)


def _rule_applies(rule: Rule, params: Mapping[str, Any], mode: Mode) -> bool:
    if rule.modes and mode not in rule.modes:
        return False
    return all(name in params and _matches(c, params[name]) for name, c in rule.when.items())


def _rule_violations(
    model: ModelSpec, rule: Rule, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    involved = [f"params.{name}" for name in rule.when]
    if rule.modes:
        involved.append("images")
    violations = []
    for name in rule.constrained:
        if name not in params:
            continue
        value = params[name]
        forbidden: list[Scalar] = rule.forbid.get(name, [])
        only: list[Scalar] | None = rule.allow.get(name)
        if not (_matches(forbidden, value) or (only is not None and not _matches(only, value))):
            continue
        spec = model.parameter(name)
        allowed = list(only) if only is not None else None
        if spec is not None and spec.allowed_values is not None:
            base = allowed if allowed is not None else spec.allowed_values
            allowed = [v for v in base if not _matches(forbidden, v)]
        extra: dict[str, Any] = {"fields": [*involved, f"params.{name}"]}
        if allowed is not None:
            extra["allowed"] = allowed
        violations.append(_detail(f"params.{name}", rule.message, **extra))
    return violations


def _raise(errors: list[dict[str, Any]], model: ModelSpec) -> None:
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    raise ValidationFailed(f"Invalid request for {model.id}: {fields}", details=errors)


def validate_request(
    catalog: Catalog,
    model_id: str,
    kind: ModelKind,
    params: Mapping[str, Any] | None = None,
    images_count: int = 0,
    has_mask: bool = False,
    n: int = 1,
) -> ValidatedRequest:
    """Check a request for `kind` media against the catalog; raise `ValidationFailed` (422).

    Hidden models count as unknown. All per-field problems are reported together; cross-field
    rules are checked only once every value on its own is valid.
    """
    model = _resolve_model(catalog, model_id, kind)
    errors: list[dict[str, Any]] = []
    if params is not None and not isinstance(params, Mapping):
        raise ValidationFailed(details=[_detail("params", "must be an object")])
    values = _check_params(model, params or {}, errors)
    _check_n(model, n, errors)
    mode = _resolve_mode(model, images_count, errors)
    _check_mask(model, has_mask, mode, errors)
    if errors:
        _raise(errors, model)
    assert mode is not None  # _resolve_mode reports an error whenever it returns None
    for rule in model.rules:
        if _rule_applies(rule, values, mode):
            errors.extend(_rule_violations(model, rule, values))
    if errors:
        _raise(errors, model)
    return ValidatedRequest(
        model=model,
        params=values,
        mode=mode,
        n=n,
        images_count=images_count,
        has_mask=has_mask,
    )


__all__ = ["ValidatedRequest", "validate_request"]
