"""One module per CLI command; each has ``register(sub)`` adding its parser to ``toolchain``'s.

Modules import the stages they call inside their handlers, so that ``toolchain --help`` stays fast
and a command never pays for another stage's imports.
"""

#: the commands in the order ``toolchain --help`` lists them (module ``toolchain.commands.<name>``)
COMMANDS: tuple[str, ...] = (
    "train",
    "export",
    "convert",
    "simulate",
    "energy",
    "run",
    "inspect",
    "targets",
    "sweep",
)
