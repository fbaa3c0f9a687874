ntp:
  pkg.installed: []
