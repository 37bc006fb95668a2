"""Video reading (streamed) and writing, frame sampling, and mask image files."""

from __future__ import annotations

from .frame_folder import image_size, list_frame_files, natural_key, read_rgb_image
from .info import DEFAULT_FOLDER_FPS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoInfo
from .mask_files import davis_palette, read_gray_png, read_index_png, write_binary_png, write_index_png
from .sampling import sample_frame_indices
from .video import VideoReader, open_video, probe_video
from .writer import write_frame_folder, write_image, write_video

__all__ = [
    "DEFAULT_FOLDER_FPS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "VideoReader",
    "davis_palette",
    "image_size",
    "list_frame_files",
    "natural_key",
    "open_video",
    "probe_video",
    "read_gray_png",
    "read_index_png",
    "read_rgb_image",
    "sample_frame_indices",
    "write_binary_png",
    "write_frame_folder",
    "write_image",
    "write_index_png",
    "write_video",
]
