"""The correction loop: reviewed flags and labelled examples become a new, compared and versioned model."""
