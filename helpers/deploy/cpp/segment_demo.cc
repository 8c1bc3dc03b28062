// segment_demo.cc: the workbook's C++ instance-segmentation demo for a split-head YOLO-seg .rknn (rknn C API).
//
//   ./rknn_segment_demo model.rknn labels.txt image.png [more images] [--conf 0.25] [--iou 0.7] [--end2end]
//
// For each image: letterbox and run it as detect_demo.cc does (demo_io.h: int8 outputs dequantized with their zero
// point and scale), decode with yolo_segment.h (boxes and selection as the detector; each mask from its coefficients x
// the prototypes, upsampled to the letterboxed input, cut and resized to the image, sigmoid > 0.5, inside its box) and
// print the instances in the Python runner's format, with each mask's area in pixels. With --masks DIR it also writes
// each image's masks into DIR as a PGM (0 = background, instance i = 255 - i; PGM needs no image library).
#include "demo_io.h"
#include "yolo_segment.h"

// The image's masks as one 8-bit PGM: instance i (best first) painted 255 - i, later instances under earlier ones.
static void write_pgm(const std::string& path, const std::vector<workbook::Instance>& found, const workbook::Letterbox& lb) {
    std::vector<unsigned char> img(static_cast<size_t>(lb.width) * lb.height, 0);
    for (size_t i = found.size(); i-- > 0;)
        for (size_t p = 0; p < img.size(); ++p)
            if (found[i].mask[p]) img[p] = static_cast<unsigned char>(255 - std::min<size_t>(i, 254));
    std::ofstream out(path.c_str(), std::ios::binary);
    out << "P5\n" << lb.width << " " << lb.height << "\n255\n";
    out.write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
}

// Run one image and print its instances; false (with the reason printed) when the runtime fails.
static bool segment(const demo::Model& m, const char* path, const std::vector<std::string>& labels, const demo::Options& o) {
    std::vector<workbook::Output> floats;
    workbook::Letterbox lb;
    if (!demo::infer(m, path, floats, lb)) return false;
    std::vector<workbook::Instance> found;
    try {
        found = workbook::postprocess_segment(floats, lb, o.conf, o.iou, 300, 30000, o.end2end);
    } catch (const std::invalid_argument& e) {
        return demo::fail(e.what(), 2), false;
    }
    printf("%s: %zu instance(s)\n", path, found.size());
    for (size_t i = 0; i < found.size(); ++i) {
        const workbook::Detection& d = found[i].box;
        printf("  %-12s %.3f  box x1=%.0f y1=%.0f x2=%.0f y2=%.0f  mask %zu px\n", demo::label(labels, d.cls).c_str(), d.score,
               d.x1, d.y1, d.x2, d.y2, found[i].area);
    }
    if (!o.extra_value.empty()) {
        std::string name = path;
        name = name.substr(name.find_last_of('/') + 1);
        write_pgm(o.extra_value + "/" + name.substr(0, name.find_last_of('.')) + ".pgm", found, lb);
    }
    return true;
}

int main(int argc, char** argv) {
    demo::Options o = demo::parse_options(argc, argv, "--masks");
    if (argc < 4 || o.images.empty())
        return demo::fail("usage: rknn_segment_demo model.rknn labels.txt image [image ...] [--conf 0.25] [--iou 0.7] [--end2end] "
                          "[--masks DIR]", 2);
    demo::Model m;
    int code = demo::open_model(argv[1], m);
    if (code == 0 && (m.outs.size() < 5 || (m.outs.size() - 1) % 4 != 0))  // yolo_segment.h's refusal, before any image runs
        code = demo::fail(m.outs.size() == 2 ? "model.rknn has the stock segmentation head, whose INT8 class scores collapse to 0 "
                                               "on the NPU; export it with head: split in notebook 10 and convert again"
                                             : "the model's outputs are not four per stride and the prototypes; pass a split-head "
                                               "segmentation model");
    std::vector<std::string> labels = demo::read_labels(argv[2]);
    for (size_t i = 0; code == 0 && i < o.images.size(); ++i)
        if (!segment(m, o.images[i], labels, o)) code = 1;
    if (m.ctx) rknn_destroy(m.ctx);
    return code;
}
