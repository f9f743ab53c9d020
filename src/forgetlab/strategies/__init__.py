"""Fine-tuning strategies as config: which data (training/mixing.py), which parameters train
(adapters.py, through peft) and which penalty is added to the loss (penalties.py). run.py checks them
against the model (checks.py) and applies them; weight_movement.py measures how far training moved the
weights; saving.py keeps the run's model or adapter and export.py turns it into a loadable folder."""
