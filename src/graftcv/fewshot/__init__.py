"""Few-shot evaluation: N-way K-shot episodes on frozen pretrained features, every method on the same episodes."""

from graftcv.fewshot.episodes import Episode, sample_episodes
from graftcv.fewshot.methods import FEWSHOT_METHODS, FewShotMethod, register_fewshot_method
from graftcv.fewshot.run import FewShotResult, fewshot

__all__ = ["FEWSHOT_METHODS", "Episode", "FewShotMethod", "FewShotResult", "fewshot", "register_fewshot_method",
           "sample_episodes"]  # fmt: skip
