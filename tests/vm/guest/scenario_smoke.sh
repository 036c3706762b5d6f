# Smoke: the tools run, deno runs the bundle.
note start
check deno_version deno --version
check bundle_help dmremap --help
check nbd_client_version nbd-client -V
check main_create main_create; ls -l /dev/mapper; dmsetup table
check create dmremap create "$SETUP" --main "$MAIN" --spare "$DISK_SPARE"
note serve
serve_start && result serve true "" || result serve false "$(cat /tmp/serve.log)"
note served
check status status_json
