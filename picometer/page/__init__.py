"""The web page (GET /-/ui): spend against the caps, a chart of the last days, objectives, canary, recent alerts and
calls, and buttons to pause, resume and mute. Server-rendered HTML, no script; a face over picometer.ops."""
