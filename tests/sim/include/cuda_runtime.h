// tests/sim/include/cuda_runtime.h - what a CUDA translation unit sees under the gcpo SIMT
// simulator: the runtime API plus the device side (execution-space keywords, built-in
// variables, barriers, warp primitives, atomics, intrinsics, launches). See gcpo_sim/device.hpp.
#pragma once

#include "cuda_runtime_api.h"
#include "gcpo_sim/device.hpp"
