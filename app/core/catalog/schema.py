"""The model catalog as data: what each model is, which parameters it takes, and which
combinations it refuses.

The same schema reads the built-in catalog (`builtin.yaml`) and an operator's `MODELS_FILE`,
and is what `GET /api/v1/models` serves: the web page builds its forms and shows the
cross-field rules before submit, and `validation.validate_request` enforces them.
A definition that contradicts itself (a default outside the allowed values, a rule naming an
unknown parameter, an image model with video capabilities, …) is refused when loaded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from app.core.catalog.values import (
    InvalidValue,
    Scalar,
    check_range,
    format_value,
    match_enum,
    to_bool,
    to_int,
    to_number,
    to_string,
)

ModelKind = Literal["video", "image"]
ParamType = Literal["enum", "integer", "number", "boolean", "string"]
Mode = Literal["text_to_video", "image_to_video", "frames_to_video", "text_to_image", "image_edit"]

# Adapter names (modules in app/clients/) and the kind of media each produces. A model naming
# an adapter not listed here is refused at load time, so a typo in MODELS_FILE fails loudly.
ADAPTER_KINDS: dict[str, ModelKind] = {
    "sora": "video",
    "veo": "video",
    "seedance": "video",
    "openai_sora": "video",
    "ark": "video",
    "gemini_veo": "video",
    "kling": "video",
    "images": "image",
}

# Top-level request fields and the upstream fields adapters build from images: a parameter
# with one of these names would collide with them.
RESERVED_PARAM_NAMES = frozenset(
    {
        "model",
        "prompt",
        "n",
        "images",
        "image",
        "mask",
        "callback_url",
        "notify_hook",
        "first_frame",
        "last_frame",
        "input_reference",
        "content",
    }
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
PARAM_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

StrictScalar = StrictBool | StrictInt | StrictFloat | StrictStr


class _Spec(BaseModel):
    # Unknown keys are typos in an operator's file: refuse them rather than ignore them.
    model_config = ConfigDict(extra="forbid")


class AllowedValue(_Spec):
    value: StrictScalar
    label: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `allowed: [10, 15]` is shorthand for `[{value: 10}, {value: 15}]`.
        if not isinstance(data, dict):
            data = {"value": data}
        if data.get("label") is None and "value" in data:
            data = {**data, "label": _default_label(data["value"])}
        return data


def _default_label(value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return format_value(value).strip("'")


class ParameterSpec(_Spec):
    name: str = Field(pattern=PARAM_NAME_PATTERN)
    type: ParamType
    label: str = ""
    help: str | None = None
    allowed: list[AllowedValue] | None = None
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None
    max_length: int | None = Field(default=None, ge=1)
    default: StrictScalar | None = None
    required: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpec:
        if not self.label:
            self.label = self.name.replace("_", " ").capitalize()
        if self.name in RESERVED_PARAM_NAMES:
            raise ValueError(f"parameter name {self.name!r} is reserved for a request field")
        if self.type == "enum":
            if not self.allowed:
                raise ValueError(f"enum parameter {self.name!r} needs a non-empty 'allowed' list")
            values = [a.value for a in self.allowed]
            if len({(type(v), v) for v in values}) != len(values):
                raise ValueError(f"parameter {self.name!r} lists an allowed value twice")
        elif self.allowed is not None:
            raise ValueError(f"'allowed' is only for enum parameters ({self.name!r})")
        if (self.min is not None or self.max is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError(
                f"'min'/'max' are only for integer or number parameters ({self.name!r})"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"parameter {self.name!r} has min greater than max")
        if self.max_length is not None and self.type != "string":
            raise ValueError(f"'max_length' is only for string parameters ({self.name!r})")
        if self.default is not None:
            try:
                self.default = self.coerce(self.default)
            except InvalidValue as exc:
                raise ValueError(f"default of {self.name!r} {exc}") from exc
        return self

    @property
    def allowed_values(self) -> list[Scalar] | None:
        return [a.value for a in self.allowed] if self.allowed is not None else None

    def coerce(self, value: Any) -> Scalar:
        """The canonical value for `value`, or `InvalidValue` saying what is accepted."""
        if self.type == "enum":
            return match_enum(value, self.allowed_values or [])
        if self.type == "boolean":
            return to_bool(value)
        if self.type == "integer":
            number: int | float = to_int(value)
            check_range(number, self.min, self.max)
            return number
        if self.type == "number":
            number = to_number(value)
            check_range(number, self.min, self.max)
            return number
        return to_string(value, self.max_length)


ConditionValue = StrictScalar | list[StrictScalar]


class Rule(_Spec):
    """A cross-field constraint: when every `when` condition holds (and, if `modes` is given,
    the request is in one of those modes), `forbid` lists values a parameter must not take and
    `allow` the only values it may take. Conditions compare against values after defaults."""

    when: dict[str, ConditionValue] = Field(default_factory=dict)
    modes: list[Mode] | None = None
    forbid: dict[str, list[StrictScalar]] = Field(default_factory=dict)
    allow: dict[str, list[StrictScalar]] = Field(default_factory=dict)
    message: str = Field(min_length=1)

    @model_validator(mode="after")
    def _has_parts(self) -> Rule:
        if not self.when and not self.modes:
            raise ValueError("a rule needs a 'when' condition or 'modes'")
        if not self.forbid and not self.allow:
            raise ValueError("a rule needs 'forbid' or 'allow'")
        return self

    @property
    def constrained(self) -> list[str]:
        return list(dict.fromkeys([*self.forbid, *self.allow]))


class Capabilities(_Spec):
    text_to_video: bool = False
    image_to_video: bool = False
    frames_to_video: bool = False
    text_to_image: bool = False
    image_edit: bool = False
    mask: bool = False
    # Images a request may carry in total (reference images, or first and last frame).
    max_reference_images: int = Field(default=0, ge=0, le=64)
    # Outputs per request (`n`).
    max_n: int = Field(default=1, ge=1, le=10)

    def modes(self, kind: ModelKind) -> list[Mode]:
        flags: list[tuple[Mode, bool]] = (
            [
                ("text_to_video", self.text_to_video),
                ("image_to_video", self.image_to_video),
                ("frames_to_video", self.frames_to_video),
            ]
            if kind == "video"
            else [("text_to_image", self.text_to_image), ("image_edit", self.image_edit)]
        )
        return [mode for mode, enabled in flags if enabled]


VIDEO_MODES: frozenset[str] = frozenset({"text_to_video", "image_to_video", "frames_to_video"})
IMAGE_MODES: frozenset[str] = frozenset({"text_to_image", "image_edit"})


class ModelSpec(_Spec):
    id: str = Field(pattern=ID_PATTERN)
    kind: ModelKind
    adapter: str
    upstream_model: str = ""
    display_name: str = ""
    description: str = ""
    hidden: bool = False
    capabilities: Capabilities
    parameters: list[ParameterSpec] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        self.upstream_model = self.upstream_model or self.id
        self.display_name = self.display_name or self.id
        expected_kind = ADAPTER_KINDS.get(self.adapter)
        if expected_kind is None:
            known = ", ".join(sorted(ADAPTER_KINDS))
            raise ValueError(f"unknown adapter {self.adapter!r} (known: {known})")
        if expected_kind != self.kind:
            raise ValueError(f"adapter {self.adapter!r} produces {expected_kind}, not {self.kind}")
        self._check_capabilities()
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError("a parameter name appears twice")
        self.rules = [self._canonical_rule(i, rule) for i, rule in enumerate(self.rules)]
        return self

    def _check_capabilities(self) -> None:
        caps = self.capabilities
        foreign = IMAGE_MODES if self.kind == "video" else VIDEO_MODES
        wrong = sorted(m for m in foreign if getattr(caps, m))
        if wrong or (self.kind == "video" and caps.mask):
            raise ValueError(f"a {self.kind} model cannot have {', '.join(wrong) or 'mask'}")
        if not caps.modes(self.kind):
            raise ValueError("capabilities enable no generation mode")
        takes_images = caps.image_to_video or caps.frames_to_video or caps.image_edit
        if takes_images and caps.max_reference_images < 1:
            raise ValueError("capabilities accept images but max_reference_images is 0")
        if not takes_images and caps.max_reference_images:
            raise ValueError("max_reference_images is set but no mode accepts images")
        if caps.frames_to_video and caps.max_reference_images < 2:
            raise ValueError("frames_to_video needs max_reference_images of at least 2")
        if caps.mask and not caps.image_edit:
            raise ValueError("mask needs image_edit")

    def _canonical_rule(self, index: int, rule: Rule) -> Rule:
        # Rule values go through the parameter's own coercion, so `{hd: "true"}` in a file
        # means the same as `{hd: true}` and a value the parameter cannot take is an error.
        def canonical(name: str, values: list[Any]) -> list[Any]:
            spec = self.parameter(name)
            if spec is None:
                raise ValueError(f"rule {index} names unknown parameter {name!r}")
            try:
                return [spec.coerce(v) for v in values]
            except InvalidValue as exc:
                raise ValueError(f"rule {index}: a value for {name!r} {exc}") from exc

        if rule.modes:
            foreign = [m for m in rule.modes if m not in self.capabilities.modes(self.kind)]
            if foreign:
                raise ValueError(f"rule {index} names modes the model lacks: {foreign}")
        when: dict[str, Any] = {}
        for name, value in rule.when.items():
            values = canonical(name, value if isinstance(value, list) else [value])
            when[name] = values if isinstance(value, list) else values[0]
        return rule.model_copy(
            update={
                "when": when,
                "forbid": {n: canonical(n, v) for n, v in rule.forbid.items()},
                "allow": {n: canonical(n, v) for n, v in rule.allow.items()},
            }
        )

    def parameter(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def modes(self) -> list[Mode]:
        return self.capabilities.modes(self.kind)


class Catalog(_Spec):
    """Every known model, hidden ones included; lookups skip hidden models unless asked."""

    models: list[ModelSpec]
    _by_id: dict[str, ModelSpec] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        seen: set[str] = set()
        for model in self.models:
            if model.id in seen:
                raise ValueError(f"model id {model.id!r} appears twice")
            seen.add(model.id)
        return self

    def model_post_init(self, _context: Any) -> None:
        self._by_id = {m.id: m for m in self.models}

    def get(self, model_id: str, *, include_hidden: bool = False) -> ModelSpec | None:
        model = self._by_id.get(model_id)
        if model is None or (model.hidden and not include_hidden):
            return None
        return model

    def visible(self, kind: ModelKind | None = None) -> list[ModelSpec]:
        return [m for m in self.models if not m.hidden and (kind is None or m.kind == kind)]

    def ids(self, kind: ModelKind | None = None) -> list[str]:
        return [m.id for m in self.visible(kind)]


# What `GET /api/v1/models` serves: everything a form needs, nothing about hiding.


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    kind: ModelKind
    display_name: str
    description: str
    adapter: str
    upstream_model: str
    modes: list[Mode]
    capabilities: Capabilities
    parameters: list[ParameterSpec]
    rules: list[Rule]

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ModelOut:
        return cls(
            id=spec.id,
            kind=spec.kind,
            display_name=spec.display_name,
            description=spec.description,
            adapter=spec.adapter,
            upstream_model=spec.upstream_model,
            modes=spec.modes,
            capabilities=spec.capabilities,
            parameters=spec.parameters,
            rules=spec.rules,
        )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]
