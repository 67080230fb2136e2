"""The worked example: one training step of a spec's network with the numbers in every
equation (`symgrad explain`), evaluated from the Plan's statements."""
