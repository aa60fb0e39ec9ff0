"""Media layer: storage behind a small interface, safe streaming downloads, inspection and
thumbnails, and HTTP delivery with Range support. Routes and the task engine build on this."""

from app.core.media.delivery import deliver_media, download_redirect_url
from app.core.media.download import (
    CheckedURL,
    DownloadedFile,
    DownloadPolicy,
    HostResolutionError,
    RetryConfig,
    check_url_allowed,
    download_to_temp,
    is_forbidden_address,
    redact_url,
    write_base64_to_temp,
)
from app.core.media.errors import (
    InvalidStorageKey,
    MediaDownloadError,
    MediaError,
    MediaExpired,
    MediaForbiddenHost,
    MediaNotFound,
    MediaTooLarge,
    MediaTypeRejected,
    RangeNotSatisfiable,
)
from app.core.media.http_range import media_response, parse_range
from app.core.media.inspect import (
    SUPPORTED_CONTENT_TYPES,
    MediaInfo,
    extension_for,
    is_image,
    is_video,
    make_thumbnail,
    probe,
    sniff_content_type,
)
from app.core.media.storage import (
    LocalMediaStorage,
    MediaStorage,
    content_key,
    create_media_storage,
    thumbnail_key,
)

__all__ = [
    "SUPPORTED_CONTENT_TYPES",
    "CheckedURL",
    "DownloadPolicy",
    "DownloadedFile",
    "HostResolutionError",
    "InvalidStorageKey",
    "LocalMediaStorage",
    "MediaDownloadError",
    "MediaError",
    "MediaExpired",
    "MediaForbiddenHost",
    "MediaInfo",
    "MediaNotFound",
    "MediaStorage",
    "MediaTooLarge",
    "MediaTypeRejected",
    "RangeNotSatisfiable",
    "RetryConfig",
    "check_url_allowed",
    "content_key",
    "create_media_storage",
    "deliver_media",
    "download_redirect_url",
    "download_to_temp",
    "extension_for",
    "is_forbidden_address",
    "is_image",
    "is_video",
    "make_thumbnail",
    "media_response",
    "parse_range",
    "probe",
    "redact_url",
    "sniff_content_type",
    "thumbnail_key",
    "write_base64_to_temp",
]
