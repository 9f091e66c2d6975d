"""The prediction service behind `graftcv serve`: FastAPI over a saved model, where bad uploads get a 4xx."""

from graftcv.serve.app import ServeSettings, Service, app_from_env, create_app, serve, serve_cam_methods
from graftcv.serve.uploads import BodyLimit, Limits, UploadError, check_content_type, decode_image

__all__ = [
    "BodyLimit",
    "Limits",
    "ServeSettings",
    "Service",
    "UploadError",
    "app_from_env",
    "check_content_type",
    "create_app",
    "decode_image",
    "serve",
    "serve_cam_methods",
]
