"""Accounts and sessions: registration, sign-in, the current user, password change, sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from app.models.schemas.common import InputModel

USERNAME_PATTERN = r"^[A-Za-z0-9._-]+$"
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# Sign-in accepts any string up to this size: a too-long guess is just a wrong password, and
# bcrypt never sees it raw (the password is pre-hashed), so size cannot slow the server down.
LOGIN_FIELD_MAX_LENGTH = 1024

Username = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=50, pattern=USERNAME_PATTERN),
]
NewPassword = Annotated[str, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)]


class RegisterRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    username: Username = Field(description="3-50 characters: letters, digits, '.', '_' or '-'.")
    email: EmailStr
    password: NewPassword = Field(description="8-128 characters.")


class LoginRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    username_or_email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=LOGIN_FIELD_MAX_LENGTH)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token (and its session) expires.")
    session_id: str


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    username: str
    email: str
    is_admin: bool
    is_active: bool
    storage_quota_bytes: int
    storage_used_bytes: int
    created_at: datetime


class PasswordChangeRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=LOGIN_FIELD_MAX_LENGTH)
    new_password: NewPassword = Field(description="8-128 characters.")


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime | None
    ip_address: str | None
    user_agent: str | None
    current: bool = Field(description="True for the session this request is authenticated by.")
    revoked: bool
