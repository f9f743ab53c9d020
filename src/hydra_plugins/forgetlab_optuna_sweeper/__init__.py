"""forgetlab's Hydra sweeper on Optuna >= 4: `hydra/sweeper=forgetlab_optuna` (see conf/hparams_search/).

Hydra finds it by scanning the `hydra_plugins` namespace package; `config` registers its configs, `sweeper`
holds the class (Optuna is imported only when a search runs, so plain runs do not pay for it).
"""
