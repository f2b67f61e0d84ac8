"""covidct: the command line and the embedded single-process pipeline. Research use only."""
