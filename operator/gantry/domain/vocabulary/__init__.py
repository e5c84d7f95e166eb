"""The words every layer shares: phases, reasons, problems, conditions, commands, names, times, image
references.
"""
