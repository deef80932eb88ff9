// The host twins without the run-time AVX2 clones (vector extensions 4 floats wide on x86-64).
#define GCPO_NO_HOST_DISPATCH 1
#define GCPO_PATH_NS host_path_generic_fns
#define GCPO_PATH_NAME host_path_generic
#define GCPO_PATH_LABEL "no AVX2 clone"
#define gcpo gcpo_path_generic
#include "host_paths_variant.inc"
