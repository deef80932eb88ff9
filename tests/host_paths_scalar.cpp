// The host twins as plain scalar loops: no AVX2 clones, no vector extensions.
#define GCPO_NO_HOST_DISPATCH 1
#define GCPO_NO_HOST_VECTOR_EXT 1
#define GCPO_PATH_NS host_path_scalar_fns
#define GCPO_PATH_NAME host_path_scalar
#define GCPO_PATH_LABEL "scalar"
#define gcpo gcpo_path_scalar
#include "host_paths_variant.inc"
