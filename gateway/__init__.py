"""The core every other part stands on (settings, model, points, commands, store, web) and the composition
root (app) that builds and runs all the parts."""
