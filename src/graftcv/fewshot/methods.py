"""Few-shot methods on pooled features, one registration each: most are easyfsl's classifiers (on an identity
backbone: the features are computed once and cached), the logistic-regression probe is scikit-learn's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graftcv.registry import Registry


@dataclass(frozen=True)
class FewShotMethod:
    """`scores(support, support_labels, query)`: arrays in, one row of class scores per query image out.
    `transductive`: it also reads the (unlabelled) query set, so it is reported apart from the inductive ones."""

    name: str
    help: str
    scores: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    transductive: bool = False


FEWSHOT_METHODS: Registry[FewShotMethod] = Registry("few-shot method")


def register_fewshot_method(method: FewShotMethod) -> FewShotMethod:
    return FEWSHOT_METHODS.register(method)


def _easyfsl(build: Callable) -> Callable:
    """Scores of an easyfsl classifier built per episode, on features centred on the support mean and
    L2-normalized (SimpleShot's CL2N; the support is all an inductive method may use to centre)."""

    def scores(support: np.ndarray, support_labels: np.ndarray, query: np.ndarray) -> np.ndarray:
        import torch

        s, q = torch.from_numpy(np.asarray(support, np.float32)), torch.from_numpy(np.asarray(query, np.float32))
        classifier = build(feature_centering=s.mean(0), feature_normalization=2)
        classifier.process_support_set(s, torch.from_numpy(np.asarray(support_labels, np.int64)))
        with torch.no_grad():
            return classifier(q).numpy()

    return scores


def _simple_shot(**options):
    from easyfsl.methods import SimpleShot

    return SimpleShot(**options)


def _finetune(**options):
    from easyfsl.methods import Finetune

    # easyfsl's steps and learning rate; temperature 10 as graftcv's prototype head (cosines span [-1, 1])
    return Finetune(fine_tuning_steps=200, fine_tuning_lr=1e-4, temperature=10.0, **options)


def _bd_cspn(**options):
    from easyfsl.methods import BDCSPN

    return BDCSPN(**options)


def _tim(**options):
    from easyfsl.methods import TIM

    return TIM(**options)


def _logistic(support: np.ndarray, support_labels: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Logistic regression on L2-normalized features, scikit-learn's default C (Tian et al. 2020's few-shot
    baseline)."""
    from sklearn.linear_model import LogisticRegression

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    model = LogisticRegression(max_iter=1000).fit(unit(support), support_labels)
    return model.predict_proba(unit(query))


register_fewshot_method(FewShotMethod("prototype", "Nearest centroid of centred, L2-normalized features (SimpleShot)",
                                      _easyfsl(_simple_shot)))  # fmt: skip
register_fewshot_method(FewShotMethod("linear-probe", "Logistic regression on the support set", _logistic))
register_fewshot_method(FewShotMethod("finetune-head", "A cosine head fine-tuned on the support set (200 steps)",
                                      _easyfsl(_finetune)))  # fmt: skip
register_fewshot_method(FewShotMethod("bd-cspn", "Prototypes rectified with the queries (BD-CSPN; transductive)",
                                      _easyfsl(_bd_cspn), transductive=True))  # fmt: skip
register_fewshot_method(FewShotMethod("tim", "Transductive information maximization (TIM; transductive)",
                                      _easyfsl(_tim), transductive=True))  # fmt: skip
