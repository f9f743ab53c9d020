"""Fine-tuning strategies as config: which data (training/recipes.py), which parameters train
(adapters.py, through peft) and which penalty is added to the loss (penalties.py). run.py meets them
through builder.py; weight_movement.py measures how far training moved the weights; export.py turns a
run directory into a folder `from_pretrained` loads."""
