"""The run protocol every study shares: options (the names a user types), the lifecycle (lock,
open or resume, interrupt, report, finished mark) and run directories. Imports only
:mod:`layerscope.core`."""
