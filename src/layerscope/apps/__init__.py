"""The applications on top of the studies: the command line, the recipes (the sources'
findings, judged), the static site, the Ray sweeps and the cluster they run on."""
