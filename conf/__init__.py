# Makes conf/ importable as the package `forgetlab.conf`, so Hydra finds it via pkg://forgetlab.conf
# whether forgetlab is installed editable or from a wheel. Importing it registers the typed schema that
# train.yaml extends (forgetlab.config.schema), so every composition is checked against it.
from forgetlab.config import register_configs

register_configs()
