// pose_demo.cc: the workbook's C++ pose demo for a split-head YOLO-pose .rknn (rknn C API).
//
//   ./rknn_pose_demo model.rknn labels.txt image.png [more images] --kpt-shape 17,3 [--conf 0.25] [--iou 0.7] [--end2end]
//   (--kpt-shape K,ndim: the model's keypoints, model.json's kpt_shape; run_pose.sh passes it)
//
// For each image: letterbox and run it as detect_demo.cc does (demo_io.h: int8 outputs dequantized with their zero
// point and scale), decode with yolo_pose.h (boxes and selection as the detector; keypoints at each kept anchor) and
// print the poses in the Python runner's format: the box line, then x,y,v per keypoint in the image's pixels.
#include "demo_io.h"
#include "yolo_pose.h"

// Run one image and print its poses; false (with the reason printed) when the runtime fails.
static bool pose(const demo::Model& m, const char* path, const std::vector<std::string>& labels, const demo::Options& o, int k,
                 int ndim) {
    std::vector<workbook::Output> floats;
    workbook::Letterbox lb;
    if (!demo::infer(m, path, floats, lb)) return false;
    std::vector<workbook::Pose> found;
    try {
        found = workbook::postprocess_pose(floats, lb, k, ndim, o.conf, o.iou, 300, 30000, o.end2end);
    } catch (const std::invalid_argument& e) {
        return demo::fail(e.what(), 2), false;
    }
    printf("%s: %zu pose(s)\n", path, found.size());
    for (size_t i = 0; i < found.size(); ++i) {
        const workbook::Detection& d = found[i].box;
        printf("  %-12s %.3f  box x1=%.0f y1=%.0f x2=%.0f y2=%.0f\n", demo::label(labels, d.cls).c_str(), d.score, d.x1, d.y1,
               d.x2, d.y2);
        printf("    keypoints x,y,v:");
        for (int j = 0; j < k; ++j)
            printf(" %.0f,%.0f,%.2f", found[i].keypoints[j * 3], found[i].keypoints[j * 3 + 1], found[i].keypoints[j * 3 + 2]);
        printf("\n");
    }
    return true;
}

int main(int argc, char** argv) {
    demo::Options o = demo::parse_options(argc, argv, "--kpt-shape");
    int k = 0, ndim = 0;
    if (sscanf(o.extra_value.c_str(), "%d,%d", &k, &ndim) != 2 || k < 1 || (ndim != 2 && ndim != 3)) k = 0;
    if (argc < 4 || o.images.empty() || k == 0)
        return demo::fail("usage: rknn_pose_demo model.rknn labels.txt image [image ...] --kpt-shape K,ndim (model.json's "
                          "kpt_shape, ndim 2 or 3) [--conf 0.25] [--iou 0.7] [--end2end]", 2);
    demo::Model m;
    int code = demo::open_model(argv[1], m);
    if (code == 0 && (m.outs.size() == 1 || m.outs.size() % 4 != 0))  // yolo_pose.h's refusal, before any image runs
        code = demo::fail(m.outs.size() == 1 ? "model.rknn has the stock pose head, whose INT8 class scores collapse to 0 on the "
                                               "NPU; export it with head: split in notebook 10 and convert again"
                                             : "the model's outputs are not four per stride; pass a split-head pose model");
    std::vector<std::string> labels = demo::read_labels(argv[2]);
    for (size_t i = 0; code == 0 && i < o.images.size(); ++i)
        if (!pose(m, o.images[i], labels, o, k, ndim)) code = 1;
    if (m.ctx) rknn_destroy(m.ctx);
    return code;
}
