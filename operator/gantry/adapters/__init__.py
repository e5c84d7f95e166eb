"""One module per outside system; each turns the domain's effects into calls on that system."""
