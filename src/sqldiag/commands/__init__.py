"""One module per subcommand; each is an object with prepare_parser() and run()."""

from sqldiag.commands.compare import CompareCommand
from sqldiag.commands.diff import DiffCommand
from sqldiag.commands.report import ReportCommand
from sqldiag.commands.run import RunCommand
from sqldiag.commands.scenario import ScenarioCommand
from sqldiag.commands.snapshot import SnapshotCommand

COMMANDS = (ScenarioCommand(), RunCommand(), CompareCommand(), DiffCommand(), ReportCommand(),
            SnapshotCommand())
