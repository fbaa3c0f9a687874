#!/bin/sh
while read -r b; do mc mb --ignore-existing "local/$b"; done < /etc/minio-init/buckets.txt
