// demo_io.h: what the workbook's C++ demos (detect_demo.cc, segment_demo.cc, pose_demo.cc) share around the rknn C
// API: the model, labels and images read (stb_image, its implementation compiled here: include this header from the
// one source file of a demo program), each image letterboxed as helpers/tasks/detect/postprocess.py does (yolo_detect.h),
// run, and each output taken as the runtime gives it (int8 for a quantized model) and dequantized with the zero point
// and scale rknn_query reports, as float NCHW for the decode. Errors are one line on stderr.
#ifndef WORKBOOK_DEMO_IO_H
#define WORKBOOK_DEMO_IO_H

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "rknn_api.h"

#define STB_IMAGE_IMPLEMENTATION
#include "stb_image.h"

#include "yolo_detect.h"

namespace demo {

using workbook::Letterbox;
using workbook::Output;

// One line of the reason on stderr, then exit code 1 (2 for bad usage).
inline int fail(const std::string& why, int code = 1) {
    fprintf(stderr, "error: %s\n", why.c_str());
    return code;
}

// The whole file in memory (rknn_init takes the model as a buffer); empty when unreadable.
inline std::vector<char> read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Class names, one per line (a missing file gives numbers instead).
inline std::vector<std::string> read_labels(const char* path) {
    std::vector<std::string> names;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) names.push_back(line);
    return names;
}

// The class name of index cls, or the index itself when labels.txt has no such line.
inline std::string label(const std::vector<std::string>& labels, int cls) {
    return cls < static_cast<int>(labels.size()) ? labels[cls] : std::to_string(cls);
}

// The image letterboxed into a size x size RGB canvas (uint8 NHWC); false when it cannot be read.
inline bool letterboxed(const char* path, int size, std::vector<unsigned char>& canvas, Letterbox& lb) {
    int w = 0, h = 0, c = 0;
    unsigned char* rgb = stbi_load(path, &w, &h, &c, 3);
    if (!rgb) return false;
    lb = workbook::letterbox(rgb, h, w, size, canvas);
    stbi_image_free(rgb);
    return true;
}

// One output as float NCHW: int8 affine outputs dequantized with their own zero point and scale.
inline Output to_float(const rknn_tensor_attr& attr, const rknn_output& out) {
    bool nhwc = attr.fmt == RKNN_TENSOR_NHWC;
    Output o;
    o.channels = attr.dims[nhwc ? 3 : 1];
    o.height = attr.dims[nhwc ? 1 : 2];
    o.width = attr.dims[nhwc ? 2 : 3];
    if (attr.type == RKNN_TENSOR_INT8 && attr.qnt_type == RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC)
        o.data = workbook::dequantize(static_cast<const int8_t*>(out.buf), attr.n_elems, attr.zp, attr.scale);
    else
        o.data.assign(static_cast<const float*>(out.buf), static_cast<const float*>(out.buf) + attr.n_elems);
    if (nhwc) {  // the decode reads channel planes
        std::vector<float> planes(o.data.size());
        size_t hw = static_cast<size_t>(o.height) * o.width;
        for (size_t i = 0; i < hw; ++i)
            for (int ch = 0; ch < o.channels; ++ch) planes[ch * hw + i] = o.data[i * o.channels + ch];
        o.data.swap(planes);
    }
    return o;
}

// A loaded model: its context, input side in pixels and output attributes.
struct Model {
    rknn_context ctx;
    int size;
    std::vector<rknn_tensor_attr> outs;
};

// Load the .rknn and query its input and outputs; 0, or the exit code after one line saying why.
inline int open_model(const char* path, Model& m) {
    std::vector<char> model = read_file(path);
    if (model.empty()) return fail(std::string("cannot read model file ") + path + "; pass the bundle's model.rknn", 2);
    m.ctx = 0;
    if (rknn_init(&m.ctx, model.data(), static_cast<uint32_t>(model.size()), 0, NULL) != RKNN_SUCC)
        return fail("rknn_init failed; check that librknnrt.so is not older than the toolkit that built the model");
    rknn_input_output_num io;
    memset(&io, 0, sizeof(io));
    rknn_tensor_attr in_attr;
    memset(&in_attr, 0, sizeof(in_attr));
    bool ok = rknn_query(m.ctx, RKNN_QUERY_IN_OUT_NUM, &io, sizeof(io)) == RKNN_SUCC &&
              rknn_query(m.ctx, RKNN_QUERY_INPUT_ATTR, &in_attr, sizeof(in_attr)) == RKNN_SUCC;
    for (uint32_t i = 0; ok && i < io.n_output; ++i) {
        rknn_tensor_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.index = i;
        ok = rknn_query(m.ctx, RKNN_QUERY_OUTPUT_ATTR, &attr, sizeof(attr)) == RKNN_SUCC;
        m.outs.push_back(attr);
    }
    m.size = static_cast<int>(in_attr.fmt == RKNN_TENSOR_NCHW ? in_attr.dims[2] : in_attr.dims[1]);
    return ok ? 0 : fail(std::string("rknn_query failed on ") + path + "; pass a model.rknn built for this chip by rknn-toolkit2");
}

// One image letterboxed and run: its float outputs and geometry; false (with the reason printed) when it cannot be read
// or the runtime fails.
inline bool infer(const Model& m, const char* path, std::vector<Output>& floats, Letterbox& lb) {
    std::vector<unsigned char> canvas;
    if (!letterboxed(path, m.size, canvas, lb)) return fail(std::string("cannot read image ") + path + "; check the file is a valid image"), false;
    rknn_input in;
    memset(&in, 0, sizeof(in));
    in.index = 0;
    in.type = RKNN_TENSOR_UINT8;
    in.fmt = RKNN_TENSOR_NHWC;
    in.size = static_cast<uint32_t>(canvas.size());
    in.buf = canvas.data();
    int ret = rknn_inputs_set(m.ctx, 1, &in);
    if (ret == RKNN_SUCC) ret = rknn_run(m.ctx, NULL);
    if (ret != RKNN_SUCC)
        return fail(std::string("running ") + path + " failed (rknn_inputs_set/rknn_run returned " + std::to_string(ret) +
                    "); check that rknn_server / librknnrt.so match the toolkit that built the model"), false;
    std::vector<rknn_output> raw(m.outs.size());
    for (size_t i = 0; i < raw.size(); ++i) {
        memset(&raw[i], 0, sizeof(rknn_output));
        raw[i].index = static_cast<uint32_t>(i);
        raw[i].want_float = !(m.outs[i].type == RKNN_TENSOR_INT8 && m.outs[i].qnt_type == RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC);
    }
    ret = rknn_outputs_get(m.ctx, static_cast<uint32_t>(raw.size()), raw.data(), NULL);
    if (ret != RKNN_SUCC)
        return fail(std::string("reading the outputs of ") + path + " failed (rknn_outputs_get returned " + std::to_string(ret) +
                    "); check that librknnrt.so matches the toolkit that built the model"), false;
    floats.clear();
    for (size_t i = 0; i < raw.size(); ++i) floats.push_back(to_float(m.outs[i], raw[i]));
    rknn_outputs_release(m.ctx, static_cast<uint32_t>(raw.size()), raw.data());
    return true;
}

// The options every demo takes after model.rknn and labels.txt: images, --conf, --iou, --end2end, and one
// task option with a value (`extra`, e.g. "--kpt-shape"; "" for none) returned in extra_value.
struct Options {
    std::vector<const char*> images;
    float conf, iou;
    bool end2end;
    std::string extra_value;
};

inline Options parse_options(int argc, char** argv, const std::string& extra = "") {
    Options o;
    o.conf = 0.25f, o.iou = 0.7f, o.end2end = false;
    for (int i = 3; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--end2end") o.end2end = true;
        else if ((arg == "--conf" || arg == "--iou") && i + 1 < argc)
            (arg == "--conf" ? o.conf : o.iou) = static_cast<float>(atof(argv[++i]));
        else if (!extra.empty() && arg == extra && i + 1 < argc) o.extra_value = argv[++i];
        else o.images.push_back(argv[i]);
    }
    return o;
}

}  // namespace demo

#endif
