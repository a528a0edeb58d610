"""The one error a user sees for bad input: `error: <field>: <problem>; allowed: ...`."""


class ConfigError(Exception):
    """Bad input, reported as one line naming the field (or file) and what is allowed.

    The CLI prints `str(err)` and exits with code 2; nothing has been written by then.
    `field` names the setting (`run_id`, `train.epochs`), never a command-line flag;
    `settings`: other settings `allowed` names, which the CLI also spells as its flags.
    """

    def __init__(
        self, field: str, problem: str, allowed: str | None = None, settings: tuple[str, ...] = ()
    ):
        self.field, self.problem, self.allowed, self.settings = field, problem, allowed, settings
        super().__init__(self.line())

    def line(self) -> str:
        text = f"error: {self.field}: {self.problem}"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        # One line, always: messages from libraries sometimes carry newlines.
        return " ".join(text.split())
