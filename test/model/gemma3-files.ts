/** Gemma 3's processor files for tests. */

/** google/gemma-3-4b-it's preprocessor_config.json. */
export const GEMMA3_PREPROCESSOR = {
  do_convert_rgb: null,
  do_normalize: true,
  do_pan_and_scan: null,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_processor_type: 'Gemma3ImageProcessor',
  image_seq_length: 256,
  image_std: [0.5, 0.5, 0.5],
  pan_and_scan_max_num_crops: null,
  pan_and_scan_min_crop_size: null,
  pan_and_scan_min_ratio_to_activate: null,
  processor_class: 'Gemma3Processor',
  resample: 2,
  rescale_factor: 0.00392156862745098,
  size: { height: 896, width: 896 },
};
