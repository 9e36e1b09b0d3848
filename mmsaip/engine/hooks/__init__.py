from .saip_teacher_hook import SAIPTeacherHook

__all__ = ['SAIPTeacherHook']
