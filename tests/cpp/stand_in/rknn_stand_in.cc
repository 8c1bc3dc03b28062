// STAND-IN for librknnrt.so (the board's rknn runtime), for tests only: it implements the calls
// helpers/deploy/cpp/detect_demo.cc makes, so the demo can be linked and run on a PC. It runs no model:
// the test computes each image's real outputs beforehand (the same model under ONNX Runtime, quantized to
// int8 with a zero point and scale per output, as the board returns them) and this file hands them out.
//
// WORKBOOK_RKNN_STAND_IN=<folder> holding model.txt ("input H W", "outputs N", then per output "C H W zp scale")
// and out<k>_<i>.bin (int8 output i for the k-th image set). Each rknn_inputs_set writes input<k>.bin, the
// exact bytes the demo fed, for the test to compare with the workbook's letterbox.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "rknn_api.h"

namespace {

struct StandIn {
    int in_h = 0, in_w = 0, images = 0;
    std::vector<rknn_tensor_attr> outs;
};

StandIn g;

std::string folder() {
    const char* f = getenv("WORKBOOK_RKNN_STAND_IN");
    return f ? f : ".";
}

}  // namespace

extern "C" {

int rknn_init(rknn_context* context, void* model, uint32_t size, uint32_t, rknn_init_extend*) {
    if (size < 4 || memcmp(model, "RKNN", 4) != 0) return -1;  // as the runtime: not an .rknn
    std::ifstream in((folder() + "/model.txt").c_str());
    std::string word;
    size_t n = 0;
    in >> word >> g.in_h >> g.in_w >> word >> n;
    for (size_t i = 0; i < n; ++i) {
        rknn_tensor_attr a;
        memset(&a, 0, sizeof(a));
        a.index = static_cast<uint32_t>(i);
        a.n_dims = 4;
        a.dims[0] = 1;
        in >> a.dims[1] >> a.dims[2] >> a.dims[3] >> a.zp >> a.scale;
        a.n_elems = a.dims[1] * a.dims[2] * a.dims[3];
        a.size = a.n_elems;
        a.fmt = RKNN_TENSOR_NCHW;
        a.type = RKNN_TENSOR_INT8;
        a.qnt_type = RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC;
        g.outs.push_back(a);
    }
    *context = 1;
    return in ? 0 : -1;
}

int rknn_destroy(rknn_context) { return 0; }

int rknn_query(rknn_context, rknn_query_cmd cmd, void* info, uint32_t) {
    if (cmd == RKNN_QUERY_IN_OUT_NUM) {
        rknn_input_output_num* io = static_cast<rknn_input_output_num*>(info);
        io->n_input = 1;
        io->n_output = static_cast<uint32_t>(g.outs.size());
    } else if (cmd == RKNN_QUERY_INPUT_ATTR) {
        rknn_tensor_attr* a = static_cast<rknn_tensor_attr*>(info);
        a->n_dims = 4;
        a->dims[0] = 1, a->dims[1] = g.in_h, a->dims[2] = g.in_w, a->dims[3] = 3;
        a->fmt = RKNN_TENSOR_NHWC;
        a->type = RKNN_TENSOR_INT8;
    } else {
        rknn_tensor_attr* a = static_cast<rknn_tensor_attr*>(info);
        if (a->index >= g.outs.size()) return -1;
        *a = g.outs[a->index];
    }
    return 0;
}

int rknn_inputs_set(rknn_context, uint32_t n, rknn_input inputs[]) {
    if (n != 1 || inputs[0].type != RKNN_TENSOR_UINT8 || inputs[0].fmt != RKNN_TENSOR_NHWC ||
        inputs[0].size != static_cast<uint32_t>(g.in_h * g.in_w * 3))
        return -1;
    std::ofstream((folder() + "/input" + std::to_string(g.images) + ".bin").c_str(), std::ios::binary)
        .write(static_cast<const char*>(inputs[0].buf), inputs[0].size);
    ++g.images;
    return 0;
}

int rknn_run(rknn_context, rknn_run_extend*) { return 0; }

int rknn_outputs_get(rknn_context, uint32_t n, rknn_output outputs[], rknn_output_extend*) {
    for (uint32_t i = 0; i < n; ++i) {
        if (outputs[i].want_float) return -1;  // the demo must take int8 outputs and dequantize them itself
        std::vector<char>* buf = new std::vector<char>(g.outs[i].size);
        std::string path = folder() + "/out" + std::to_string(g.images - 1) + "_" + std::to_string(i) + ".bin";
        std::ifstream(path.c_str(), std::ios::binary).read(buf->data(), static_cast<std::streamsize>(buf->size()));
        outputs[i].buf = buf->data();
        outputs[i].size = g.outs[i].size;
        outputs[i].is_prealloc = 0;
        outputs[i].index = i;
        static std::vector<std::vector<char>*> keep;  // released with the process
        keep.push_back(buf);
    }
    return 0;
}

int rknn_outputs_release(rknn_context, uint32_t, rknn_output[]) { return 0; }

}  // extern "C"
