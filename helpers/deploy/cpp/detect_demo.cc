// detect_demo.cc: the workbook's C++ detector demo for a split-head YOLO .rknn (rknn C API).
//
//   ./rknn_detect_demo model.rknn labels.txt image.png [more images] [--conf 0.25] [--iou 0.7] [--end2end]
//   (--end2end: the model has an end-to-end head, YOLO26 or YOLOv10: top-k selection instead of NMS)
//
// For each image: read it as RGB (stb_image), letterbox it to the model's input as
// helpers/detect/postprocess.py does (bilinear like cv2.resize, grey 114 padding), run the model, take
// each output as the runtime gives it (int8 for a quantized model) and dequantize it with the zero point
// and scale rknn_query reports (demo_io.h), decode the boxes with yolo_detect.h, and print the detections in the
// Python runner's format.
// Written for the workbook (not taken from the toolkit's codegen); the codegen project beside it
// supplies the build (CMakeLists.txt, build_linux.sh) and stb_image.h from the rknpu2 SDK.
#include "demo_io.h"

using workbook::Detection;

// Run one image and print its detections; false (with the reason printed) when the runtime fails.
static bool detect(const demo::Model& m, const char* path, const std::vector<std::string>& labels, const demo::Options& o) {
    std::vector<workbook::Output> floats;
    workbook::Letterbox lb;
    if (!demo::infer(m, path, floats, lb)) return false;
    std::vector<Detection> dets = workbook::postprocess(floats, lb, o.conf, o.iou, 300, 30000, o.end2end);
    printf("%s: %zu detection(s)\n", path, dets.size());
    for (size_t i = 0; i < dets.size(); ++i) {
        const Detection& d = dets[i];
        printf("  %-12s %.3f  box x1=%.0f y1=%.0f x2=%.0f y2=%.0f\n", demo::label(labels, d.cls).c_str(), d.score, d.x1, d.y1,
               d.x2, d.y2);
    }
    return true;
}

int main(int argc, char** argv) {
    demo::Options o = demo::parse_options(argc, argv);
    if (argc < 4 || o.images.empty())
        return demo::fail("usage: rknn_detect_demo model.rknn labels.txt image [image ...] [--conf 0.25] [--iou 0.7] [--end2end]", 2);
    demo::Model m;
    int code = demo::open_model(argv[1], m);
    if (code == 0 && (m.outs.size() == 1 || m.outs.size() % 3 != 0))  // the same refusal as yolo_detect.h, before any image runs
        code = demo::fail(m.outs.size() == 1 ? "model.rknn has the stock detector head, whose INT8 class scores collapse to 0 on "
                                               "the NPU; export it with head: split in notebook 10 and convert again"
                                             : "the model's outputs are not three per stride; pass a split-head detector");
    std::vector<std::string> labels = demo::read_labels(argv[2]);
    for (size_t i = 0; code == 0 && i < o.images.size(); ++i)
        if (!detect(m, o.images[i], labels, o)) code = 1;
    if (m.ctx) rknn_destroy(m.ctx);
    return code;
}
