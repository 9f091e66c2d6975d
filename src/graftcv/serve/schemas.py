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


class LabelProbability(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    """One image's answer: `class`, `probability` and `top` for a single-label model; `labels` (multi-label) or
    `tasks` (multi-task) and every output's `probabilities` for a model with several labels per image."""

    model_config = ConfigDict(populate_by_name=True)

    filename: str | None = Field(description="The upload's file name, as the client sent it.")
    class_name: str | None = Field(None, alias="class", description="The most probable class.")
    probability: float | None = None
    top: list[ClassProbability] | None = Field(None, description="The k most probable classes, best first.")
    labels: list[LabelProbability] | None = Field(
        None, description="Multi-label: every label above its decision threshold, most probable first."
    )
    tasks: dict[str, ClassProbability | list[LabelProbability]] | None = Field(
        None, description="Multi-task: per task, its class (single-label task) or its labels above threshold."
    )
    probabilities: dict[str, float] | None = Field(None, description="Several labels: every output's probability.")


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
    tasks: list[dict[str, Any]] | None = None  # several labels per image: the tasks, their labels and thresholds
    tta: str = "none"  # test-time augmentation of every prediction: none | flip (2 passes) | flip-crops (10)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "An upload that is empty, corrupt, truncated or not an image, or an unknown class."),
        (413, "Too many files, a file or request over the size limit, or an image over the pixel limit."),
        (415, "Not multipart/form-data, or a file that is not sent as an image."),
        (422, "A missing or malformed parameter."),
    ]
}
