"""compbench's default Hydra launcher (hydra/launcher=compbench): a sweep's untimed cells side by side,
its timed cells one at a time (harness.sweep.parallel). Hydra finds launchers only in the
`hydra_plugins` namespace package, so this thin adapter lives here and the logic in harness."""
