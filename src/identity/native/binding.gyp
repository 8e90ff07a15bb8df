# Builds the identity addon offline against the local Node headers:
#   npm_config_nodedir=/usr npx node-gyp rebuild --directory src/identity/native
# Plain Node-API in C (ABI-stable, N-API 8): one binary serves every Node version that has it.
# Linux only (SO_PEERCRED); identity.c refuses to compile elsewhere.
{
  "targets": [
    {
      "target_name": "portcullis_identity",
      "sources": ["identity.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-Wconversion", "-fvisibility=hidden"]
    }
  ]
}
