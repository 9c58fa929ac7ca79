"""SNN stage: neuron dynamics (the one place the equations live), surrogate gradients, layers, models."""
