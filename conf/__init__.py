# Makes conf/ importable as the package `forgetlab.conf`, so Hydra finds it via pkg://forgetlab.conf
# whether forgetlab is installed editable or from a wheel.
