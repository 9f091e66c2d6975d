"""What the network's outputs mean when an image has more than one label: tasks, each a slice of the outputs.

A single-label model has no layout (softmax over every output, as ever). A multi-label model is one `multi` task
(a sigmoid per label); a multi-task model is several tasks side by side, each `single` (softmax over its slice) or
`multi`. The flat output names are the labels themselves for one task and `TASK:CLASS` for several, and an image's
label text is the `;`-joined names of its positive outputs, so every per-image list stays a list of strings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graftcv.errors import GraftcvError

SINGLE, MULTI = "single", "multi"
JOIN = ";"
MULTILABEL_TASK = "labels"


@dataclass(frozen=True)
class Task:
    """One head of a multi-output model: its name, kind and class names (short, without the task prefix)."""

    name: str
    kind: str
    classes: tuple[str, ...]
    thresholds: tuple[float, ...] | None = None  # multi: each label's decision threshold (chosen on validation)

    def as_dict(self) -> dict:
        found = {"name": self.name, "kind": self.kind, "classes": list(self.classes)}
        if self.thresholds is not None:
            found["thresholds"] = [round(float(t), 4) for t in self.thresholds]
        return found


@dataclass(frozen=True)
class Layout:
    """Tasks side by side over the network's outputs."""

    tasks: tuple[Task, ...]
    slices: tuple[slice, ...] = field(init=False)

    def __post_init__(self) -> None:
        slices, start = [], 0
        for task in self.tasks:
            slices.append(slice(start, start + len(task.classes)))
            start += len(task.classes)
        object.__setattr__(self, "slices", tuple(slices))

    @property
    def kind(self) -> str:
        return "multi-label" if len(self.tasks) == 1 else "multi-task"

    @property
    def outputs(self) -> list[str]:
        """The flat output names (the model's `classes`)."""
        if len(self.tasks) == 1:
            return list(self.tasks[0].classes)
        return [f"{task.name}:{name}" for task in self.tasks for name in task.classes]

    def segments(self) -> list[list]:
        """[start, stop, "softmax"|"sigmoid"] per task: what the `segments` head op applies."""
        pairs = zip(self.tasks, self.slices, strict=True)
        return [[s.start, s.stop, "sigmoid" if t.kind == MULTI else "softmax"] for t, s in pairs]

    def thresholds(self) -> np.ndarray:
        """One decision threshold per output (0.5 where none was chosen; unused for single tasks)."""
        cut = np.full(len(self.outputs), 0.5)
        for task, part in zip(self.tasks, self.slices, strict=True):
            if task.kind == MULTI and task.thresholds is not None:
                cut[part] = task.thresholds
        return cut

    def with_thresholds(self, cut: np.ndarray) -> Layout:
        tasks = [
            Task(t.name, t.kind, t.classes, tuple(float(v) for v in cut[s]) if t.kind == MULTI else None)
            for t, s in zip(self.tasks, self.slices, strict=True)
        ]
        return Layout(tuple(tasks))

    def targets(self, labels: list[str]) -> np.ndarray:
        """The 0/1 target matrix (n, outputs) of `;`-joined label texts."""
        index = {name: i for i, name in enumerate(self.outputs)}
        rows = np.zeros((len(labels), len(index)), dtype=np.float32)
        for row, text in enumerate(labels):
            for name in split_labels(text):
                if name not in index:
                    raise GraftcvError(f"Label {name!r} is not one of the model's outputs.")
                rows[row, index[name]] = 1.0
        return rows

    def predicted(self, probs: np.ndarray) -> np.ndarray:
        """(n, outputs) booleans: each single task's best class, each multi-label label at or above its threshold."""
        probs = np.asarray(probs, dtype=float)
        chosen = probs >= self.thresholds()
        for task, part in zip(self.tasks, self.slices, strict=True):
            if task.kind == SINGLE:
                chosen[:, part] = np.eye(len(task.classes), dtype=bool)[probs[:, part].argmax(1)]
        return chosen

    def decide(self, probs: np.ndarray) -> list[dict]:
        """Per image and task: a single task's best class and its probability; a multi task's labels above their
        thresholds, each with its probability, most probable first."""
        found = []
        for row, chosen in zip(np.asarray(probs, dtype=float), self.predicted(probs), strict=True):
            answer = {}
            for task, part in zip(self.tasks, self.slices, strict=True):
                values, picked = row[part], chosen[part]
                items = [
                    {"label": task.classes[i], "probability": float(values[i])}
                    for i in np.argsort(-values)
                    if picked[i]
                ]
                if task.kind == SINGLE:
                    items = {"class": items[0]["label"], "probability": items[0]["probability"]}
                answer[task.name] = items
            found.append(answer)
        return found

    def results(self, probs: np.ndarray, names: list[str]) -> list[dict]:
        """What `predict` gives per image: its `path`; for one multi-label task `labels` (those above their
        thresholds, with probabilities), for several `tasks` (per task its class or labels); `probabilities` of
        every output."""
        found = []
        for name, decided, row in zip(names, self.decide(probs), np.asarray(probs), strict=True):
            scores = {output: float(p) for output, p in zip(self.outputs, row, strict=True)}
            answer = {"labels": decided[self.tasks[0].name]} if len(self.tasks) == 1 else {"tasks": decided}
            found.append({"path": name, **answer, "probabilities": scores})
        return found

    def as_meta(self) -> list[dict]:
        return [task.as_dict() for task in self.tasks]

    @classmethod
    def from_meta(cls, entries: object) -> Layout | None:
        """The layout graftcv.json records (None for a single-label model); malformed entries are an error."""
        if entries is None:
            return None
        try:
            tasks = []
            for entry in entries:
                kind, classes = entry["kind"], tuple(str(c) for c in entry["classes"])
                if kind not in (SINGLE, MULTI) or not classes:
                    raise ValueError
                cut = entry.get("thresholds")
                if cut is not None and (len(cut) != len(classes) or not all(0.0 <= float(v) <= 1.0 for v in cut)):
                    raise ValueError
                tasks.append(Task(str(entry["name"]), kind, classes, tuple(float(v) for v in cut) if cut else None))
        except (KeyError, TypeError, ValueError):
            raise GraftcvError("The artifact's task layout (graftcv.json 'tasks') is malformed.") from None
        if not tasks:
            raise GraftcvError("The artifact's task layout (graftcv.json 'tasks') is empty.")
        return cls(tuple(tasks))


def split_labels(text: str) -> list[str]:
    return [name for name in text.split(JOIN) if name]
