"""Pure core of fedsec: features, model, training, weight math; no flwr, files or network."""
