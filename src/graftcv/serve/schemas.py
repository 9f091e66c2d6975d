"""The service's response bodies: what /docs and the OpenAPI spec show, and what the endpoints return."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    error: str = Field(description="What was wrong with the request, in one sentence.")


class ClassProbability(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_name: str = Field(alias="class")
    probability: float


class Prediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    filename: str | None = Field(description="The upload's file name, as the client sent it.")
    class_name: str = Field(alias="class", description="The most probable class.")
    probability: float
    top: list[ClassProbability] = Field(description="The k most probable classes, best first.")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class Health(BaseModel):
    status: str


class Metadata(BaseModel):
    classes: list[str]
    backbone: str
    strategy: str | None
    head: str | None
    metrics: dict[str, float | None]
    input_size: list[int]
    runtime: str
    onnx: dict[str, Any] | None
    explain_methods: list[str]
    limits: dict[str, int]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "An upload that is empty, corrupt, truncated or not an image, or an unknown class."),
        (413, "Too many files, a file or request over the size limit, or an image over the pixel limit."),
        (415, "Not multipart/form-data, or a file that is not sent as an image."),
        (422, "A missing or malformed parameter."),
    ]
}
