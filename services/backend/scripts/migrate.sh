#!/bin/sh
for f in /migrations/*.sql; do psql -f "$f"; done
