"""The `graftcv` command line: a thin face over the Python API (`graftcv.cli:main` is the console script)."""

from graftcv.cli import adaptation, combine, delivery, fewshot, inference, scenes, shards, training, tuning
from graftcv.cli.application import app, err, main, out

# Registered here, in the order `graftcv --help` lists them.
for _command in (
    training.train,
    shards.shard,
    training.compare,
    tuning.tune,
    adaptation.adapt,
    fewshot.fewshot,
    fewshot.zeroshot,
    combine.ensemble,
    training.demo,
    inference.predict,
    delivery.export,
    delivery.serve,
    inference.evaluate,
    delivery.models,
    inference.explain,
    training.report,
):
    app.command()(_command)
app.command("lr-find")(training.lr_find)
app.command("map")(scenes.map_command)
app.command("add-class")(fewshot.add_class)

__all__ = ["app", "err", "main", "out"]
