#!/bin/sh
exec slurmctld -D
