// detect_demo.cc: the workbook's C++ detector demo for a split-head YOLO .rknn (rknn C API).
//
//   ./rknn_detect_demo model.rknn labels.txt image.png [more images] [--conf 0.25] [--iou 0.7] [--end2end]
//   (--end2end: the model has an end-to-end head, YOLO26 or YOLOv10: top-k selection instead of NMS)
//
// For each image: read it as RGB (stb_image), letterbox it to the model's input as
// helpers/detect/postprocess.py does (bilinear like cv2.resize, grey 114 padding), run the model, take
// each output as the runtime gives it (int8 for a quantized model) and dequantize it with the zero point
// and scale rknn_query reports, decode the boxes with yolo_detect.h, and print the detections in the
// Python runner's format.
// Written for the workbook (not taken from the toolkit's codegen); the codegen project beside it
// supplies the build (CMakeLists.txt, build_linux.sh) and stb_image.h from the rknpu2 SDK.
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

using workbook::Detection;
using workbook::Letterbox;
using workbook::Output;

// One line of the reason on stderr, then exit code 1 (2 for bad usage).
static int fail(const std::string& why, int code = 1) {
    fprintf(stderr, "error: %s\n", why.c_str());
    return code;
}

// The whole file in memory (rknn_init takes the model as a buffer); empty when unreadable.
static std::vector<char> read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Class names, one per line (a missing file gives numbers instead).
static std::vector<std::string> read_labels(const char* path) {
    std::vector<std::string> names;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) names.push_back(line);
    return names;
}

// The image letterboxed into a size x size RGB canvas (uint8 NHWC); false when it cannot be read.
static bool letterboxed(const char* path, int size, std::vector<unsigned char>& canvas, Letterbox& lb) {
    int w = 0, h = 0, c = 0;
    unsigned char* rgb = stbi_load(path, &w, &h, &c, 3);
    if (!rgb) return false;
    lb = workbook::letterbox(rgb, h, w, size, canvas);
    stbi_image_free(rgb);
    return true;
}

// One output as float NCHW: int8 affine outputs dequantized with their own zero point and scale.
static Output to_float(const rknn_tensor_attr& attr, const rknn_output& out) {
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

// The model's input side in pixels (NHWC or NCHW input attr).
static int input_side(const rknn_tensor_attr& attr) { return static_cast<int>(attr.fmt == RKNN_TENSOR_NCHW ? attr.dims[2] : attr.dims[1]); }

// Run one image and print its detections; false (with the reason printed) when the runtime fails.
static bool detect(rknn_context ctx, const std::vector<rknn_tensor_attr>& outs, int size, const char* path,
                   const std::vector<std::string>& labels, float conf, float iou, bool end2end) {
    std::vector<unsigned char> canvas;
    Letterbox lb;
    if (!letterboxed(path, size, canvas, lb)) return fail(std::string("cannot read image ") + path + "; check the file is a valid image"), false;
    rknn_input in;
    memset(&in, 0, sizeof(in));
    in.index = 0;
    in.type = RKNN_TENSOR_UINT8;
    in.fmt = RKNN_TENSOR_NHWC;
    in.size = static_cast<uint32_t>(canvas.size());
    in.buf = canvas.data();
    int ret = rknn_inputs_set(ctx, 1, &in);
    if (ret == RKNN_SUCC) ret = rknn_run(ctx, NULL);
    if (ret != RKNN_SUCC)
        return fail(std::string("running ") + path + " failed (rknn_inputs_set/rknn_run returned " + std::to_string(ret) +
                    "); check that rknn_server / librknnrt.so match the toolkit that built the model"), false;
    std::vector<rknn_output> raw(outs.size());
    for (size_t i = 0; i < raw.size(); ++i) {
        memset(&raw[i], 0, sizeof(rknn_output));
        raw[i].index = static_cast<uint32_t>(i);
        raw[i].want_float = !(outs[i].type == RKNN_TENSOR_INT8 && outs[i].qnt_type == RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC);
    }
    ret = rknn_outputs_get(ctx, static_cast<uint32_t>(raw.size()), raw.data(), NULL);
    if (ret != RKNN_SUCC)
        return fail(std::string("reading the outputs of ") + path + " failed (rknn_outputs_get returned " + std::to_string(ret) +
                    "); check that librknnrt.so matches the toolkit that built the model"), false;
    std::vector<Output> floats;
    for (size_t i = 0; i < raw.size(); ++i) floats.push_back(to_float(outs[i], raw[i]));
    rknn_outputs_release(ctx, static_cast<uint32_t>(raw.size()), raw.data());
    std::vector<Detection> dets = workbook::postprocess(floats, lb, conf, iou, 300, 30000, end2end);
    printf("%s: %zu detection(s)\n", path, dets.size());
    for (size_t i = 0; i < dets.size(); ++i) {
        const Detection& d = dets[i];
        std::string name = d.cls < static_cast<int>(labels.size()) ? labels[d.cls] : std::to_string(d.cls);
        printf("  %-12s %.3f  box x1=%.0f y1=%.0f x2=%.0f y2=%.0f\n", name.c_str(), d.score, d.x1, d.y1, d.x2, d.y2);
    }
    return true;
}

int main(int argc, char** argv) {
    std::vector<const char*> images;
    float conf = 0.25f, iou = 0.7f;
    bool end2end = false;
    for (int i = 3; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--end2end") end2end = true;
        else if ((arg == "--conf" || arg == "--iou") && i + 1 < argc)
            (arg == "--conf" ? conf : iou) = static_cast<float>(atof(argv[++i]));
        else images.push_back(argv[i]);
    }
    if (argc < 4 || images.empty())
        return fail("usage: rknn_detect_demo model.rknn labels.txt image [image ...] [--conf 0.25] [--iou 0.7] [--end2end]", 2);
    std::vector<char> model = read_file(argv[1]);
    if (model.empty()) return fail(std::string("cannot read model file ") + argv[1] + "; pass the bundle's model.rknn", 2);
    rknn_context ctx = 0;
    if (rknn_init(&ctx, model.data(), static_cast<uint32_t>(model.size()), 0, NULL) != RKNN_SUCC)
        return fail("rknn_init failed; check that librknnrt.so is not older than the toolkit that built the model");
    rknn_input_output_num io;
    memset(&io, 0, sizeof(io));
    rknn_tensor_attr in_attr;
    memset(&in_attr, 0, sizeof(in_attr));
    std::vector<rknn_tensor_attr> outs;
    bool ok = rknn_query(ctx, RKNN_QUERY_IN_OUT_NUM, &io, sizeof(io)) == RKNN_SUCC &&
              rknn_query(ctx, RKNN_QUERY_INPUT_ATTR, &in_attr, sizeof(in_attr)) == RKNN_SUCC;
    for (uint32_t i = 0; ok && i < io.n_output; ++i) {
        rknn_tensor_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.index = i;
        ok = rknn_query(ctx, RKNN_QUERY_OUTPUT_ATTR, &attr, sizeof(attr)) == RKNN_SUCC;
        outs.push_back(attr);
    }
    int code = ok ? 0 : fail(std::string("rknn_query failed on ") + argv[1] + "; pass a model.rknn built for this chip by rknn-toolkit2");
    if (ok && (outs.size() == 1 || outs.size() % 3 != 0))  // the same refusal as yolo_detect.h, before any image runs
        code = fail(outs.size() == 1 ? "model.rknn has the stock detector head, whose INT8 class scores collapse to 0 on the NPU; "
                                       "export it with head: split in notebook 10 and convert again"
                                     : "the model's outputs are not three per stride; pass a split-head detector");
    std::vector<std::string> labels = read_labels(argv[2]);
    for (size_t i = 0; code == 0 && i < images.size(); ++i)
        if (!detect(ctx, outs, input_side(in_attr), images[i], labels, conf, iou, end2end)) code = 1;
    rknn_destroy(ctx);
    return code;
}
