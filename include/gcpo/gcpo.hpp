// gcpo/gcpo.hpp - the umbrella header: every operator of GCPO (Group Critical-token Policy
// Optimization) behind one include. Pure C++17; compiles with g++ alone. The CUDA twins are
// declared in gcpo/cuda.hpp (link gcpo::cuda).
//
//   #include <gcpo/gcpo.hpp>
//   gcpo::host::select_critical_tokens(...);   // which tokens to train on
//   gcpo::host::gcpo_loss_forward(...);        // the loss and metrics
//   gcpo::host::gcpo_loss_backward(...);       // dL/dlogp, then token_stats_backward
#pragma once

#include "config.hpp"
#include "status.hpp"
#include "dtype.hpp"
#include "tensor_view.hpp"
#include "grid.hpp"
#include "token_stats.hpp"
#include "similarity.hpp"
#include "selection.hpp"
#include "advantages.hpp"
#include "weight.hpp"
#include "loss.hpp"
#include "sampling.hpp"
#include "checks.hpp"
