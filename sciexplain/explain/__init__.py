"""The explanation engine: recording driver, plan, backward walk, ledger, LRP and the gradient-type methods."""
