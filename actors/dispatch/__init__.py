"""Campaign dispatch: the pure decision core, throttling rules, reports, channels and the Ray shell."""
